"""Model families. Importing this package registers every model class with the CLI."""

from lightning_gen.models.base import GenerativeModule, LikelihoodModule, NoLikelihoodError, from_levels, to_levels
from lightning_gen.models.fvsbn import FVSBN

__all__ = ["FVSBN", "GenerativeModule", "LikelihoodModule", "NoLikelihoodError", "from_levels", "to_levels"]
