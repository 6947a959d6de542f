"""nnc-tl: transfer learning for NNabla and Neural Network Console projects."""

__version__ = "0.1.0"
