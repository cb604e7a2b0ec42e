"""Sharing a trained model: the export folder laid out as a Hugging Face Hub repository, its model card,
and loading such a folder (or Hub id) back with its attribute vectors."""
