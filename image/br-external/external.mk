# Every package of this external tree (BR2_EXTERNAL_GW_PATH is set by
# Buildroot from the name in external.desc).
include $(sort $(wildcard $(BR2_EXTERNAL_GW_PATH)/package/*/*.mk))
