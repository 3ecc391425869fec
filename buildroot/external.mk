include $(sort $(wildcard $(BR2_EXTERNAL_STREAMER_PATH)/package/*/*.mk))
