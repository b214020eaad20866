"""inspector: real-time AI visual quality inspection for production lines."""

from inspector.types import ClassThresholds, Decision, Detections, Frame, Thresholds, Timings, Verdict

__all__ = ["ClassThresholds", "Decision", "Detections", "Frame", "Thresholds", "Timings", "Verdict"]
__version__ = "0.1.0"
