"""What users do to project files: the network zoo (``networks``), export of a complete NNC-style project (``export``),
weights carried between projects (``weights``), freeze overlays (``overlay``), matching their rules to a network's
parameters (``matching``) and applying them to NNabla projects and ``.sdcproj`` files (``freeze``), an image network's
preprocessing fitted to the user's images (``image_inputs``), an ``.sdcproj`` pointed at trained weights as NNC loads
them (``nnc_weights``), and what ``nnc-tl info`` shows (``info``), and the executor network as ONNX (``onnx_export``).
May import ``data``, ``formats`` and the ground floor."""
