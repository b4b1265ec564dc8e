"""Video input/output for camcodec: any video to uint8 RGB frames, and RGB frames to video files.

Reading (``read_video``, ``probe_video``): files PyAV/FFmpeg demuxes (mp4, mkv, webm, avi, Y4M 8/10-bit
4:2:0/4:2:2/4:4:4, ...), headerless I420 (``.yuv``/``.i420``/``.raw`` with ``size=(W, H)``) and folders
of PNG frames, all to a ``Clip`` of uint8 RGB frames (T, H, W, 3); ``iter_video`` gives the same frames one
at a time, ``iter_source_frames`` with the source's own 4:2:0 planes where it has them.

Writing (``VideoWriter``, ``write_video``): by extension, see ``OUTPUT_KINDS``; atomic (temporary file
beside the target, ``os.replace`` on success).

Colour rule (reader; the writer applies it in reverse), all conversions by swscale through PyAV:

* a matrix tagged on the stream wins (BT.709, BT.601, BT.2020, SMPTE 240M, FCC);
* untagged streams of compressed codecs (H.264, HEVC, VP9, ...) use BT.601, FFmpeg's default: the result
  equals ``frame.to_ndarray(format="rgb24")`` and ``ffmpeg -i in.mp4 out%d.png``, and for
  ``bigbuckbunny.mp4`` the frames the NeRV-family papers report on (checked pixel-identical);
* untagged raw video (raw I420, Y4M, rawvideo in any container) uses BT.709, the convention for raw
  4:2:0 test sequences such as UVG;
* limited ("tv") range unless the stream says full range (tag or a ``yuvj*`` format);
* RGB, gray and palette sources use no matrix (``Clip.color_matrix == "rgb"``).

Errors: ``InputError`` for sources and read options, ``OutputError`` for outputs; each message is one
line that starts with the path.
"""

from camcodec.media.clip import Clip
from camcodec.media.reader import SourceFrame, iter_source_frames, iter_video, probe_video, read_video
from camcodec.media.writer import OUTPUT_KINDS, VideoWriter, check_output_path, write_video

__all__ = [
    "OUTPUT_KINDS",
    "Clip",
    "SourceFrame",
    "VideoWriter",
    "check_output_path",
    "iter_source_frames",
    "iter_video",
    "probe_video",
    "read_video",
    "write_video",
]
