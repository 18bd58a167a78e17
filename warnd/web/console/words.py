"""The console's words and numbers: states, levels, audiences and refusals in Chinese, times in
Asia/Shanghai, and the template filters that apply them."""

from __future__ import annotations

from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import jinja2

from warnd.core.vocabulary import HAZARDS, Level

ZONE: Final = ZoneInfo("Asia/Shanghai")

WARNING_STATES: Final = {
    "pending_approval": "待审批",
    "active": "生效中",
    "superseded": "已更新",
    "cancelled": "已解除",
    "expired": "已过期",
    "muted": "已静默",
    "rejected": "已驳回",
}
CALLOUT_STATES: Final = {
    "pending": "待通知",
    "notified": "已通知",
    "acknowledged": "已叫应",
    "escalated": "已升级",
    "closed": "已关闭",
}
AUDIENCES: Final = {
    "responder": "责任人",
    "helper": "帮扶责任人",
    "facility": "重点单位",
    "household": "群众",
    "broadcast": "应急广播",
    "notice:cancelled": "解除通知",
    "notice:withdrawn": "撤销通知",
    "field_task": "现场任务人",
}
# The audit trail's actions and call-out / field-task events; unknown ones show as recorded.
ACTIONS: Final = {
    "warning_received": "收到/发布预警",
    "warning_approved": "审批通过",
    "warning_rejected": "驳回",
    "warning_cancelled": "解除",
    "warning_corrected": "更正",
    "callout_acknowledged": "值班员记录应答",
    "policy_reloaded": "重新加载策略",
    "opened": "发起叫应",
    "acknowledged": "已应答",
    "step_fired": "执行升级",
    "step_skipped": "跳过升级",
    "closed": "关闭",
    "progress": "报告进展",
    "done": "完成",
}
CHANNEL_KINDS: Final = {
    "sms": "短信",
    "voice": "语音电话",
    "broadcast": "应急广播",
    "other": "其他",
}
DIVISION_LEVELS: Final = {"city": "市", "county": "县区", "town": "乡镇", "village": "村居"}
TASK_KINDS: Final = {"door_knock": "敲门入户", "gong": "鸣锣吹哨"}
TASK_STATES: Final = {"open": "进行中", "escalated": "已升级", "done": "已完成", "closed": "已关闭"}
TASK_WHY: Final = {"blind_spot": "广播盲区", "remote": "偏远村", "loudspeaker_failed": "广播故障"}
MSG_TYPES: Final = {"Alert": "发布", "Update": "更正", "Cancel": "解除"}
STATUSES: Final = {"Actual": "正式", "Exercise": "演练", "Test": "测试"}

# Refusals of warnd.app, by their stable code: what the officer reads first; the English detail
# follows in small print for whoever has to look into it.
REFUSALS: Final = {
    "self_approval": "您是该预警的发布人，须由另一名值班员审批。",
    "not_pending": "该预警已不在待审批状态（可能已被他人审批或撤回）。",
    "texts_changed": "您阅读后，待发送的文本已经变化，请重新阅读预览后再审批。",
    "expired": "该预警已过有效期，请重新发布。",
    "not_active": "该预警已不在生效状态，无法执行此操作。",
    "not_found": "找不到该记录。",
    "already_acknowledged": "该叫应已被应答。",
    "invalid_warning": "预警内容有误，请检查后再提交。",
    "invalid_request": "填写内容有误。",
    "invalid_ack": "请填写如何取得应答（原因）。",
    "forbidden": "您的账户没有执行此操作的权限。",
    "area_mismatch": "输入的区域名称与预警区域不一致，未审批。",
    "csrf": "页面已过期或请求来源不明，请刷新页面后重试。",
    "confirm_now": "该级别的预警提交后立即发送，请勾选确认级别和区域无误。",
    "roster_file": "名册文件有误，未导入。",
}


def local(value: datetime | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    """A time as the officers read it: Beijing time."""
    if value is None:
        return "—"
    return value.astimezone(ZONE).strftime(fmt)


def level_zh(level: str) -> str:
    try:
        return Level(level).zh
    except ValueError:
        return level


def hazard_zh(hazard: str) -> str:
    found = HAZARDS.get(hazard)
    return found.zh if found is not None else hazard


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def install(env: jinja2.Environment) -> None:
    """Register the filters and word tables the templates use."""
    env.filters.update(
        local=local,
        level_zh=level_zh,
        hazard_zh=hazard_zh,
        warning_state=lambda s: WARNING_STATES.get(s, s),
        callout_state=lambda s: CALLOUT_STATES.get(s, s),
        audience=lambda a: AUDIENCES.get(a, a),
        channel_kind=lambda k: CHANNEL_KINDS.get(k, k),
        division_level=lambda v: DIVISION_LEVELS.get(v, v),
        msg_type=lambda m: MSG_TYPES.get(m, m),
        status_zh=lambda s: STATUSES.get(s, s),
        action_zh=lambda a: ACTIONS.get(a, a),
        task_kind=lambda k: TASK_KINDS.get(k, k),
        task_state=lambda k: TASK_STATES.get(k, k),
        task_why=lambda k: TASK_WHY.get(k, "") if k else "",
    )
    env.globals.update(
        percent=percent,
        HAZARDS=HAZARDS,
        LEVELS=list(Level),
        Level=Level,
    )
