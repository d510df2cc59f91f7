"""gemma4: Gemma 4 models on CPUs, through the library's C API (ctypes)."""
from ._api import (Audio, Error, Image, Model, Reply, Session, StopReason, Tools, ToolCall,
                   Video, library_version, plan_memory)

__all__ = ["Audio", "Error", "Image", "Model", "Reply", "Session", "StopReason", "Tools",
           "ToolCall", "Video", "library_version", "plan_memory"]
__version__ = "0.4.0"
