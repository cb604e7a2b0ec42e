"""Using the latent space: interpolation and vector arithmetic, attribute vectors, editing face
photos, and the alignment that makes any photo a CelebA-aligned face and pastes it back."""
