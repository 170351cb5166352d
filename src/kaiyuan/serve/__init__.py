"""An OpenAI-compatible server: protocol (pydantic requests) → app (routes) → engine interface."""
