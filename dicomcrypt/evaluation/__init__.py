"""Measuring the codec against the paper's own tables, on a site's own DICOM files.

- :mod:`.evaluate`: reconstruction quality and the denoising experiment (paper Table 6), per image.
- :mod:`.figure`: the paper's Figure 6 for one image (PNG).
- :mod:`.report`: the evaluation as JSON and Markdown, written atomically.
- :mod:`.bench`: AES on raw pixels against encoder + AES on the latent (paper Table 3), decoder
  time, payload sizes against raw pixels and lossless JPEG-LS.

Sits beside :mod:`dicomcrypt.pipeline` in the import order: it uses the DICOM layer, the codec
through its registry, the envelope and :mod:`dicomcrypt.quality`; only the CLI imports it.
"""
