"""Task pipelines, one per task, looked up by the artifact's task."""

from ..manifest import Task
from .base import Pipeline
from .question_answering import QuestionAnsweringPipeline
from .text_classification import TextClassificationPipeline
from .token_classification import TokenClassificationPipeline

PIPELINES: dict[Task, type[Pipeline]] = {
    p.task: p for p in (TextClassificationPipeline, TokenClassificationPipeline, QuestionAnsweringPipeline)
}

__all__ = [
    "PIPELINES",
    "Pipeline",
    "QuestionAnsweringPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
]
