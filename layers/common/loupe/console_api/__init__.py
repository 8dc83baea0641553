"""The console's API (issue 20): who the caller is (``identity``), the model registry as the console sees it
(``models``), and the app's users (``labelers``). Routes live in ``functions/console_api/app.py``."""
