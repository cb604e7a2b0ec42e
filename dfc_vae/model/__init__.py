"""The network (encoder, decoder, latent calibration) and its losses (KL, VGG19 feature
perceptual loss, the pixel baseline)."""
