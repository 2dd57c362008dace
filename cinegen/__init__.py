"""cinegen: one spacetime-canvas diffusion transformer for every video task."""

__version__ = "0.1.0"
