"""The seed's QAOp (seeds/000 §4.1), as written there but for the import lines."""

from ops import BaseAsyncOp


class QAOp(BaseAsyncOp):
    async def async_execute(self):
        # 读取 prompt 模板并渲染
        question = self.context.get("question", "")
        prompt = self.prompt_format("qa", question=question)

        # 调用 LLM（伪接口，具体参考你项目中的 BaseLLM 实现）
        answer = await self.llm.async_chat(prompt)

        # 写回
        self.context.response.answer = answer
        return answer
