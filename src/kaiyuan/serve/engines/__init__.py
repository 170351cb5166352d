"""Engines behind the one interface the API layer knows (:class:`kaiyuan.serve.engines.base.Engine`)."""
