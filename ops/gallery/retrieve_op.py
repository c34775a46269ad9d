"""``RetrieveOp``: find the indexed passages closest to a query, and optionally answer from them."""

from __future__ import annotations

from typing import Any

from ..services import C
from ..tool_call import ToolAttr, ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import check_max_tokens, check_positive_int, check_temperature, complete


@C.register_op()
class RetrieveOp(BaseAsyncToolOp):
    """Search the vector store for ``query``: the output ``retrieve_result`` lists
    ``{id, content, score, metadata}``, best first (score: cosine similarity).

    With ``answer=True`` the LLM then answers the query from those passages:
    the answer is the output ``answer`` and ``response.answer``. When nothing
    was found, the answer is the ``no_passages`` prompt and the LLM is not asked.

    :param top_k: passages returned when the ``top_k`` input is not given.
    :param answer: also answer the query from the passages.
    :param temperature: sampling temperature of the answer, 0 to 2.
    :param max_tokens: the longest answer, in tokens.
    """

    def __init__(
        self, top_k: int = 3, answer: bool = False, temperature: float = 0.2, max_tokens: int = 512, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.top_k = check_positive_int(top_k, "top_k")
        if not isinstance(answer, bool):
            raise ValueError(f"answer must be true or false, got {answer!r}")
        self.answer = answer
        self.temperature = check_temperature(temperature)
        self.max_tokens = check_max_tokens(max_tokens)

    def build_tool_call(self) -> ToolCall:
        outputs = {
            f"{self.short_name}_result": ToolAttr(
                type="array", description="the passages found: {id, content, score, metadata}, best first"
            )
        }
        if self.answer:
            outputs["answer"] = ToolAttr(type="string", description="the answer, from the passages")
        return ToolCall(
            description="Answer a question from the indexed documents." if self.answer
            else "Find the indexed passages most similar to a query.",
            input_schema={
                "query": {"type": "string", "description": "what to look for", "required": True},
                "top_k": {
                    "type": "integer",
                    "description": f"how many passages to retrieve (default {self.top_k})",
                    "required": False,
                },
            },
            output_schema=outputs,
        )

    def _inputs(self) -> tuple[str, int]:
        query, top_k = self.input_dict["query"], self.input_dict.get("top_k", self.top_k)
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"{self.name}: 'query' must be a non-empty string")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"{self.name}: 'top_k' must be an integer > 0, got {top_k!r}")
        return query, top_k

    async def async_execute(self) -> None:
        query, top_k = self._inputs()
        vector = await self.embedding_model.async_embed(query)
        hits = await self.vector_store.async_search(vector, top_k=top_k)
        passages = [{"id": h.id, "content": h.content, "score": h.score, "metadata": dict(h.metadata)} for h in hits]
        if not self.answer:
            self.set_output(passages)
            return
        if passages:
            numbered = "\n\n".join(f"[{i}] {p['content']}" for i, p in enumerate(passages, 1))
            prompt = self.prompt_format("answer", query=query, passages=numbered)
            reply = await complete(self, [{"role": "user", "content": prompt}], self.temperature, self.max_tokens)
        else:
            reply = self.get_prompt("no_passages").strip()
        self.set_outputs(**{f"{self.short_name}_result": passages, "answer": reply})

    async def async_after_execute(self) -> None:
        await super().async_after_execute()
        if self.answer and self.save_answer:
            self.context.response.answer = self.output_dict["answer"]
