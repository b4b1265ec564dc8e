"""Rate-distortion evaluation of camcodec beside conventional codecs.

Modules: ``datasets`` (sequences, UVG), ``metrics`` (the one metric path: RGB PSNR, PSNR-YUV, MS-SSIM),
``codecs`` (x264, x265, SVT-AV1, VP9 through PyAV; camcodec), ``bdrate`` (Bjontegaard), ``results``
(results.csv/json, resume), ``report`` (bdrate.md, RD plots), ``rd`` (the run), ``cli`` (``camcodec eval``,
``python -m eval``). Nothing here is imported by ``camcodec``.
"""
