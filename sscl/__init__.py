"""sscl: self-supervised skeleton-snippet contrastive learning for action localization."""

__version__ = "0.1.0"
