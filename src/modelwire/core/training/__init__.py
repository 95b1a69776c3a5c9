"""Training-side code: network architectures and ONNX export. Needs the `train` extra
(PyTorch); nothing on the serving path imports this package."""
