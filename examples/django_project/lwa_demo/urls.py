"""URL routes of the LWA demo project."""

from django.urls import path

from lwa_demo import views

urlpatterns = [
    path("me", views.me),
    path("health", views.health),
]
