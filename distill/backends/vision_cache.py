"""Reuse of per-image work across prompts: a text2image item's rotations reorder the same four covers, and
distractor covers recur across items. Each image is preprocessed (CPU) and encoded by the vision tower (GPU)
once; prompts are then assembled from the cached pieces."""

from __future__ import annotations

from contextlib import contextmanager

IMAGE_PAD = "<|image_pad|>"


class VisionCache:
    def __init__(self, model, processor, max_pixels: int):
        self.model = model
        self.processor = processor
        self.max_pixels = max_pixels
        self.pixels: dict[str, tuple] = {}  # path -> (pixel rows, grid_thw)
        self.features: dict[str, object] = {}  # path -> vision tower output for that image
        self.batch_keys: list[str] = []

    def preprocess(self, path: str):
        if path not in self.pixels:
            from distill.data.images import load_image

            out = self.processor.image_processor(images=[load_image(path, self.max_pixels)], return_tensors="pt")
            self.pixels[path] = (out["pixel_values"], out["image_grid_thw"][0])
        return self.pixels[path]

    def expand(self, text: str, paths: list[str]) -> str:
        """Each image's single pad token becomes as many as the image has merged patches."""
        merge = self.processor.image_processor.merge_size**2
        pieces = text.split(IMAGE_PAD)
        if len(pieces) - 1 != len(paths):
            raise ValueError(f"{len(pieces) - 1} image slots for {len(paths)} images")
        out = [pieces[0]]
        for path, rest in zip(paths, pieces[1:]):
            out.append(IMAGE_PAD * int(self.preprocess(path)[1].prod() // merge))
            out.append(rest)
        return "".join(out)

    def inputs(self, paths: list[str]) -> dict:
        """Pixel rows and grids of a batch's images, in order. Thread-safe with `active` as long as the caller
        sets `batch_keys` to the same paths right before the batch's forward pass."""
        import torch

        if not paths:
            return {}
        pv = torch.cat([self.preprocess(p)[0] for p in paths])
        grid = torch.stack([self.preprocess(p)[1] for p in paths])
        return {"pixel_values": pv, "image_grid_thw": grid}

    @contextmanager
    def active(self):
        """While active, the model's image encoder serves cached features for the current batch's images."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        from distill.patches import image_features_from

        def cached(original, pixel_values, image_grid_thw=None, **kwargs):
            import torch

            keys = self.batch_keys
            sizes = image_grid_thw.prod(-1).tolist()
            rows = torch.split(pixel_values, sizes)
            todo = [i for i, k in enumerate(keys) if k not in self.features and keys.index(k) == i]
            if todo:
                out = original(torch.cat([rows[i] for i in todo]), image_grid_thw[todo], **kwargs)
                for i, emb in zip(todo, out.pooler_output):
                    self.features[keys[i]] = emb
            return BaseModelOutputWithPooling(pooler_output=tuple(self.features[k] for k in keys))

        with image_features_from(self.model, cached):
            yield self
