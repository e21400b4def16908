"""The learned wavelet codec: integer lifting transform, context-modelled ANS coding, one stream
per frame. :mod:`.transform` (wavelet, colour), :mod:`.entropy` (tokens, tables, ANS),
:mod:`.bands` (the band traversal encoder and decoder share), :mod:`.stream` (the frame's
byte format), :mod:`.model` (fitted parameters, loaded as a model), :mod:`.fit` (fitting them).
docs/codec.md explains the design and the measurements.
"""
