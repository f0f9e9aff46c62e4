from django.db import models


class Order(models.Model):
    branch = models.CharField(max_length=200)
    total = models.IntegerField()
