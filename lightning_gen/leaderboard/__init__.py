"""Results store and leaderboard dashboard."""
