"""The allowed values of the project's settings, each list in one place: the config, the commands,
the data sources, the benchmark and the experiment scripts import them from here.

Loss names and loss reductions live with the losses themselves (dfc_vae.model.losses.LOSS_NAMES and REDUCTIONS),
where each loss is declared; the layouts with their sources (dfc_vae.data.celeba.LAYOUTS,
dfc_vae.data.synth.dataset.LAYOUTS).
"""

DEVICES = ("auto", "cpu", "cuda")  # util/device.py resolve_device: auto is CUDA when PyTorch sees a GPU, else the CPU
FIXED_PRECISIONS = ("bf16", "fp32")  # the arithmetics a training or inference step runs in
PRECISIONS = ("auto",) + FIXED_PRECISIONS  # util/device.py resolve_precision: auto is bf16 where it is native
SPLIT_NAMES = ("train", "valid", "test")
SPLITS = {"train": 0, "valid": 1, "test": 2}  # each split's number in CelebA's list_eval_partition.txt
IMAGE_SIZES = (32, 64, 128, 256)  # model/network.py: one encoder/decoder stage per halving or doubling of 64
CROPS = ("official", "center148", "center")  # data/decode.py: crop_box says what each cuts
VECTOR_METHODS = ("mean-difference", "regression")  # editing/attributes.py: how an attribute's latent vector is computed
INTERPOLATIONS = ("linear", "spherical")  # editing/latent.py interpolate: a straight line or a great circle between two z
PRIORS = ("normal", "gaussian", "mixture")  # runs/prior.py: N(0, I) (the paper's), or the densities fitted to the faces
