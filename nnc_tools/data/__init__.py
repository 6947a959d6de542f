"""Datasets: CIFAR archive readers (``cifar``), generated CIFAR-format archives (``synthetic``), downloads and the cache
folder (``download``, ``cache``), the published ImageNet models (``models``), dataset recipes and the NNC-layout
writer (``recipes``), and datasets decoded into arrays for training (``decoded``). May import ``formats`` and the
ground floor."""
