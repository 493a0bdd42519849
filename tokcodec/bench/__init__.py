"""Rate-distortion benchmark of tokcodec against ffmpeg's HEVC, VVC, AV1 and H.264 encoders.

Modules: ``ffmpeg`` (locating the binary, probing encoders, running it), ``codecs`` (one adapter
per codec and its operating points), ``measure`` (metrics of a decoded video against the shared
reference), ``bdrate`` (Bjøntegaard delta rate), ``rd`` (the sweep), ``report`` (JSON, CSV,
markdown, plots), ``clips`` (deterministic bench clips) and ``cli`` (the ``tokcodec bench`` command).
Importing this package is cheap: nothing heavy is imported until a sweep runs.
"""
