"""Video decoding: probe a file, read its frames (scaled, grey or BGR, one VR eye) with exact timestamps."""

from autofunscript.video.picture import EYES, PicturePlan
from autofunscript.video.stream import Frame, VideoInfo, VideoStream, open_video, probe

__all__ = ["EYES", "Frame", "PicturePlan", "VideoInfo", "VideoStream", "open_video", "probe"]
