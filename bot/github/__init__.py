"""releasebot as a GitHub App: the deployment protection rule and deployment statuses (issue 14).

config (the GITHUB_* settings), client (the App's JWT, installation tokens and REST calls, only under
GITHUB_API_URL), webhook (POST /github/webhook: verify, record, 202), worker (the outbox rows that handle
deliveries and post answers), messages (what GitHub and Slack are shown).
"""
