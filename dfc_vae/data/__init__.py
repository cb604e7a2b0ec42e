"""Faces in: the face record (FaceSet), its sources (CelebA in every layout, any folder, labels
files), decoding, the decode-once cache, training batches, and the synthetic face renderer."""
