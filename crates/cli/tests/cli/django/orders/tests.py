"""Tests that write to the test database and check it is this worktree's."""
import os
import time

from django.db import connection
from django.test import TestCase

from orders.models import Order


class Case:
    def test_writes_to_this_worktrees_test_database(self):
        name = connection.settings_dict["NAME"]
        assert name.startswith("test_" + os.environ["DATABASE_NAME"]), name
        for i in range(20):
            Order.objects.create(branch=os.environ["PWT_BRANCH"], total=i)
        # Overlap with the other worktree's run.
        time.sleep(0.5)
        self.assertEqual(Order.objects.count(), 20)
        self.assertEqual(Order.objects.exclude(branch=os.environ["PWT_BRANCH"]).count(), 0)


class A(Case, TestCase):
    pass


class B(Case, TestCase):
    pass


class C(Case, TestCase):
    pass


class D(Case, TestCase):
    pass
