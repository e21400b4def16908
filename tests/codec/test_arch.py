"""codec/arch: every architecture declares its facts and builder, and they agree with its network."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dicomcrypt.codec.arch import ARCHITECTURES, DEFAULT_ARCHITECTURE, architecture
from dicomcrypt.errors import ModelError


def test_reading_the_names_does_not_import_torch() -> None:
    code = (
        "import sys; from dicomcrypt.codec.arch import ARCHITECTURES; "
        "print(sorted(ARCHITECTURES), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "['paper-ae', 'ps-ae'] False"


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_record_matches_what_its_builder_makes(name: str) -> None:
    record = architecture(name)
    assert record.name == name and record.default_init in record.inits
    for init in record.inits:
        for channels in (1, 3):
            torch.manual_seed(0)
            network = record.build(channels, init, 16)
            assert isinstance(network, record.network) and network.arch == name
            x = torch.rand(1, channels, 4 * record.factor, 3 * record.factor)
            with torch.no_grad():
                latent = network.g_a(x)
                assert latent.shape == (1, record.latent_channels, 4, 3)
                assert network.g_s(latent).shape == x.shape
    rebuilt = record.network.from_state_dict(network.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), network.state_dict().values()))


def test_the_default_and_unknown_names() -> None:
    assert DEFAULT_ARCHITECTURE in ARCHITECTURES
    with pytest.raises(ModelError, match="unknown architecture 'wavelet-ae'"):
        architecture("wavelet-ae")
