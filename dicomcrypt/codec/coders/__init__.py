"""One coder per mode, found by :func:`coder_for`; see :mod:`dicomcrypt.codec.coders.base`.

The built-in coders are registered here, in one place: a new codec is a module with a
:class:`Coder` subclass and one :func:`register` line below.
"""

from dicomcrypt.codec.coders.base import Coder, CodingContext, Derivation, Packed, coder_for, register
from dicomcrypt.codec.coders.lossless import LosslessCoder
from dicomcrypt.codec.coders.lossy import LossyCoder
from dicomcrypt.codec.coders.standard import StandardCoder

__all__ = ["Coder", "CodingContext", "Derivation", "Packed", "coder_for", "register"]

register(StandardCoder())
register(LossyCoder())
register(LosslessCoder())
