"""CelebA's annotations: the 40 attribute names, the train/valid/test partition, and the layouts
in which people keep the dataset (official, torchvision's, Kaggle's).
"""

from __future__ import annotations

# The 40 attributes in the official order of list_attr_celeba.txt.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

# Share of CelebA's 202,599 images with each attribute (rounded; from list_attr_celeba.txt).
CELEBA_RATES: dict[str, float] = {
    "5_o_Clock_Shadow": 0.111, "Arched_Eyebrows": 0.267, "Attractive": 0.513,
    "Bags_Under_Eyes": 0.205, "Bald": 0.022, "Bangs": 0.152, "Big_Lips": 0.241,
    "Big_Nose": 0.234, "Black_Hair": 0.239, "Blond_Hair": 0.148, "Blurry": 0.051,
    "Brown_Hair": 0.205, "Bushy_Eyebrows": 0.142, "Chubby": 0.058, "Double_Chin": 0.047,
    "Eyeglasses": 0.065, "Goatee": 0.063, "Gray_Hair": 0.042, "Heavy_Makeup": 0.387,
    "High_Cheekbones": 0.455, "Male": 0.417, "Mouth_Slightly_Open": 0.483, "Mustache": 0.042,
    "Narrow_Eyes": 0.115, "No_Beard": 0.835, "Oval_Face": 0.284, "Pale_Skin": 0.043,
    "Pointy_Nose": 0.277, "Receding_Hairline": 0.080, "Rosy_Cheeks": 0.066, "Sideburns": 0.057,
    "Smiling": 0.482, "Straight_Hair": 0.208, "Wavy_Hair": 0.320, "Wearing_Earrings": 0.189,
    "Wearing_Hat": 0.048, "Wearing_Lipstick": 0.472, "Wearing_Necklace": 0.123,
    "Wearing_Necktie": 0.073, "Young": 0.774,
}

# Official partition (list_eval_partition.txt): 0 = train, 1 = valid, 2 = test.
SPLITS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}

# Aligned CelebA images are 178 wide, 218 high.
ALIGNED_SIZE = (178, 218)
# The official crop box (x0, y0, x1, y1) of DFC-VAE's data/crop_celebA.lua: a 138x138 face.
OFFICIAL_CROP_BOX = (30, 40, 168, 178)
