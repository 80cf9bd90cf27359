"""Video decoding: probe a file, read its frames (scaled, grey or BGR, one VR eye) with exact timestamps."""

from autofunscript.video.picture import EYES, PicturePlan
from autofunscript.video.stream import Frame, VideoInfo, VideoStream, open_video, probe

# the names a folder of videos is searched for (batch, train); a file named by the user is tried whatever its name
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".wmv", ".flv", ".mpg", ".mpeg",
                              ".ts", ".m2ts", ".mts"})

__all__ = ["EYES", "VIDEO_EXTENSIONS", "Frame", "PicturePlan", "VideoInfo", "VideoStream", "open_video", "probe"]
