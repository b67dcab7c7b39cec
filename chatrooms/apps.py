from django.apps import AppConfig


class ChatroomsConfig(AppConfig):
    name = "chatrooms"
    verbose_name = "Chatrooms"
