"""The allowed values of the project's settings, each list in one place: the config, the commands,
the data sources, the benchmark and the experiment scripts import them from here.

Loss names and loss reductions live with the losses themselves (losses.LOSS_NAMES, losses.REDUCTIONS),
where each loss is declared.
"""

IMAGE_SIZES = (32, 64, 128, 256)  # model.py: one encoder/decoder stage per halving or doubling of 64
CROPS = ("official", "center148", "center")  # data.py: crop_box says what each cuts
CELEBA_LAYOUTS = ("official", "torchvision", "kaggle", "png")  # png: the official PNG release, img_align_celeba_png/
SYNTH_LAYOUTS = ("official", "torchvision", "kaggle", "folder")  # folder: the JPEGs and a labels.csv, nothing else
SYNTHETIC_MARKER = "dfc_vae_synthetic.json"  # written last by the renderer: its presence means "complete dataset"
VECTOR_METHODS = ("mean-difference", "regression")  # attributes.py: how an attribute's latent vector is computed
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: a latent unit is active if Var(posterior mean) exceeds this
