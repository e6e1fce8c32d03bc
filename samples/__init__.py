"""Runnable sample applications (Bookinfo, httpbin) used by the tasks and tests."""
