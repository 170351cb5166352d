"""Evaluation: score models and register the results as ``eval`` artifacts.

* :mod:`~kaiyuan.evaluate.harness` (with :mod:`~kaiyuan.evaluate.tasks` and :mod:`~kaiyuan.evaluate.subjects`):
  benchmarks (MMLU, C-Eval, CMMLU, GSM8K, PIQA, LAMBADA) scored the way lm-evaluation-harness does.
* :mod:`~kaiyuan.evaluate.generation`: exact match on greedily generated answers.
* :mod:`~kaiyuan.evaluate.judge`: LLM-as-a-judge with MT-bench's rules (single-answer and pairwise grading).
* :mod:`~kaiyuan.evaluate.battles` and :mod:`~kaiyuan.evaluate.arena`: anonymous judged battles between models,
  and Chatbot-Arena-style ratings (Elo, Bradley–Terry) from them.
* Models are reached through :mod:`~kaiyuan.evaluate.language_model`, :mod:`~kaiyuan.evaluate.llamacpp_model`,
  :mod:`~kaiyuan.evaluate.endpoint_model` and :mod:`~kaiyuan.evaluate.chat_backends` (local models, GGUF
  files, OpenAI-compatible endpoints), with :mod:`~kaiyuan.evaluate.request_cache` caching requests.
"""
