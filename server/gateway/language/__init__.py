"""What people mean by the words of a chat message (dates, counts, email addresses), shared by the services and
the adapters.

It imports nothing of ours but `gateway.domain`: the chat service's tools check a model's dates with it, and the
scripted agent (an adapter) reads a person's messages with it, so it sits below both.
"""
