from django.apps import AppConfig


class SollolSiteConfig(AppConfig):
    name = "sollol_site"
    verbose_name = "SOLLOL dashboard"
