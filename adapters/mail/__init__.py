"""Notification mails: composed without health data (`compose`), sent over SMTP or written to the
outbox (`senders`), delivered with preferences, retries and a daily digest (`delivery`)."""
