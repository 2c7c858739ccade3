"""The cross-view hashing model (the only torch code): network, data, training, evaluation, export, CLI.

Install the ``train`` extra (torch, torchvision, timm, onnx). Runtime encoding does not need this package: see
:mod:`geoloc_node.encoders`.
"""
