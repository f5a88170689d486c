"""cover-distill: teacher-student distillation for matching journal covers with cover stories."""

__version__ = "0.1.0"
