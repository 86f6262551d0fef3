"""stylelipsync: dub a talking-face video to new speech (StyleLipSync, Ki & Min, ICCV 2023)."""

__version__ = "0.1.0"
