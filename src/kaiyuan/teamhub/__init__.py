"""The team hub (`kaiyuan hub serve`): models and datasets shared between machines over the Hugging Face Hub
protocol."""
