"""Two routes: the memoized quote and a health check the harness polls."""

from django.urls import path

from . import views

urlpatterns = [
    path("quote", views.quote),
    path("health", views.health),
]
