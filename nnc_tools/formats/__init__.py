"""File formats, one module and one noun each: NNabla's project schema and its learning-rate fields (``schema``), NNC's
and NNabla's naming rules (``naming``), Repeat blocks expanded as NNabla's loader does (``repeat``), the ``.nnp``
container (``nnp_zip``), parameter arrays (``parameters``), project files (``nnp``), the solver states they carry
(``solver_states``), NNC's ``.sdcproj`` (``sdcproj``) and its networks as NNC's converter sees them (``nnc_graph``),
and dataset CSVs (``nnc_csv``). Nothing here trains or starts NNabla's engine. May import only ``nnc_tools.errors``
and ``nnc_tools.fileio``."""
