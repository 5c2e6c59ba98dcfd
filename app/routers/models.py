"""What is loaded: each model's identity, checksum, size, device and test metrics."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ModelsDep
from app.schemas import Error, ModelInfo, ModelsResponse

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsResponse, summary="The loaded models",
            responses={503: {"model": Error, "description": "not ready"}})
async def list_models(models: ModelsDep) -> ModelsResponse:
    return ModelsResponse(models=[ModelInfo(**info) for info in models.describe()])
