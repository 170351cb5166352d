"""kaiyuan's web UI: chat, arena, leaderboard, model pages and compare, served beside the API (`kaiyuan serve --ui`)."""
