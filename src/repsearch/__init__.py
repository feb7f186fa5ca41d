"""repsearch: training neural networks by decoupling search (in representation space) and learning."""
__version__ = "0.1.0"
