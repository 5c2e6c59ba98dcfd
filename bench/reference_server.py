"""A tutorial-style server for the digit checkpoint: the baseline the benchmark compares against.

Written the way most FastAPI + PyTorch tutorials serve a model: load it at import, one plain
``def`` endpoint (FastAPI runs it in its thread pool), one forward pass per request, default
uvicorn settings. It keeps the service's upload contract (field ``files``, repeated) and uses the
same checkpoint and preprocessing, so the only difference the benchmark measures is how the
service schedules the work.

Run: ``uvicorn bench.reference_server:app --port 8001`` (``WEIGHTS_DIR`` picks the checkpoint folder).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

from model.checkpoint import load_checkpoint
from model.preprocess import normalise, preprocess_digit

WEIGHTS = Path(os.environ.get("WEIGHTS_DIR", Path(__file__).resolve().parent.parent / "weights"))
checkpoint = load_checkpoint(WEIGHTS / "digit.pt")
model = checkpoint.model.eval()
app = FastAPI(title="reference (tutorial-style) digit server")


@app.post("/predict/digit")
def predict(files: Annotated[list[UploadFile], File()]) -> dict:
    predictions = []
    for upload in files:
        try:
            image = Image.open(io.BytesIO(upload.file.read()))
            image.load()
        except Exception as error:  # a tutorial's catch-all
            raise HTTPException(415, f"not an image: {error}") from None
        array = preprocess_digit(image, checkpoint.preprocess)
        with torch.no_grad():
            probabilities = model(normalise(array[None], checkpoint.preprocess)).softmax(dim=1)[0]
        predictions.append({"label": int(probabilities.argmax()), "probability": float(probabilities.max()),
                            "probabilities": probabilities.tolist()})
    return {"model": "reference", "predictions": predictions}
