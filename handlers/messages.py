"""Every user-facing sentence, in one place, so the street office can review and change them."""

from __future__ import annotations

WELCOME = (
    "您好，欢迎关注{office}！\n"
    "身边有问题，直接发消息告诉我们：\n"
    "1. 用文字说明问题和地点，如“幸福里小区3号楼东侧路灯坏了”；\n"
    "2. 可以附上照片，或点“＋→位置”发送定位；\n"
    "3. 我们会给您一个工单编号，并派给负责的网格员，处理进展会在这里通知您。\n"
    "回复“查询”可查看您反映的问题。"
)

CASE_ROUTED = (
    "已受理：{category} · {place} · 编号 {number}\n"
    "已派给{grid} {leader}处理，处理进展会在这里通知您。回复“查询”可随时查看。"
)
CASE_ROUTED_URGENT_NOTE = "（紧急情况请同时拨打 110/119/120）"
CASE_NEEDS_PLACE = (
    "已记录：{category}，编号 {number}。\n请问具体在哪里？请点“＋→位置”发送定位，或回复小区、楼栋、路名。"
)
CASE_TO_DISPATCHER = (
    "已受理：{category} · {place}\n编号 {number}\n暂未匹配到具体网格，已转{grid}人工派遣，处理进展会在这里通知您。"
)
PUSH_PLACE_MISSING = "您反映的问题（{number}）还没有具体位置，已转{grid}人工派遣，处理进展会在这里通知您。"
PLACE_MISSING_NOTE = "居民未补充位置，转人工派遣"
URGENT_NEEDS_PLACE = (
    "【紧急】已受理：{category}，编号 {number}，已立即转{grid}处理。\n"
    "请马上发送位置（点“＋→位置”）或回复小区、楼栋、路名。紧急情况请同时拨打 110/119/120。"
)
PIN_ATTACHED = "已补充定位（编号 {number}），由{grid}负责。"
SUPPLEMENT_ADDED = "已补充到工单 {number}。"
DUPLICATE_LINKED = "这个问题已有居民反映，编号 {number}（{status}）。我们已把您的反映合并进去，处理进展会同样通知您。"
PLACE_ATTACHED = "已补充位置：{place}（编号 {number}）。"
LOCATION_KEPT = "已收到您的位置{label}。请用文字说明遇到的问题，我们会按这个位置派给网格员。"
PHOTO_ATTACHED = "已收到照片，已附到工单 {number}。"
PHOTO_KEPT = "已收到照片。请再用文字说明问题和地点，我们会一并登记。"
VOICE_UNCLEAR = "抱歉，没能识别这段语音。请用文字说明问题和地点。"
LINK_UNSUPPORTED = "暂不支持链接。请用文字说明问题和地点，也可以附上照片。"
UNSUPPORTED = "暂不支持这类消息。请用文字说明问题和地点，也可以发送照片或位置。"
EMPTY_TEXT = "请用文字说明遇到的问题和地点。"

RESIDENT_NO_CASES = "您当前没有未办结的问题。直接发消息说明问题和地点即可反映新问题。"
RESIDENT_TIMELINE_HEADER = "{number} {category} · {status} · {place}"
RESIDENT_TIMELINE_LINE = "{at} {action}{note}"
RESIDENT_CASES_FOOTER = "回复“查询 编号”查看处理经过。"
RESIDENT_CASE_LINE = "{number} {category} · {status} · {place}"
RESIDENT_CASES_HEADER = "您反映的、尚未办结的问题："
RESIDENT_CASE_NOT_FOUND = "没有找到您名下的工单 {number}。"
STAFF_ONLY = "“{verb}”是网格员的指令，居民无需使用。如需反映问题，请直接说明问题和地点。"

# Pushes to staff (customer-service messages).
PUSH_NEW_CASE = (
    "{urgent}【新工单】{number}\n类别：{category}\n地点：{place}\n网格：{grid}\n内容：{description}\n{contact}"
    "回复“接单 {number}”接单，处理完回复“办结 {number} 处理说明”。"
)
CONTACT_LINE = "联系电话：{phone}\n"
CATEGORY_TO_CONFIRM = "{category}（待确认，如不对请回复“改类 {number} 正确类别”）"
PUSH_REROUTED = "工单 {number} 按居民补充的位置已改派给{grid}，您无需处理。"
URGENT_FLAG = "【紧急】"

# Pushes to residents.
PUSH_ACCEPTED = "您反映的问题（{number}）已由{grid} {leader}接单，正在处理。"
PUSH_PROGRESS = "您反映的问题（{number}）有新进展：{note}"
PUSH_RESOLVED = "您反映的问题（{number}）已办结：{note}\n感谢您的反映！"

# Replies to staff.
ACCEPTED = "已接单 {number}（{category} · {place}）。处理完毕请回复“办结 {number} 处理说明”。"
RESOLVED = "已办结 {number}，已通知居民。如有现场照片，现在发过来即可附到工单上。"
PROGRESS_NOTED = "已记录 {number} 的进展，已通知居民。"
PROGRESS_NEEDS_NOTE = "请写明进展，例如：进展 {number} 已联系供电所，明天上午维修"
PROOF_ATTACHED = "照片已附到工单 {number}（办结照片）。"
STAFF_PHOTO_UNUSED = "照片没有附到任何工单：办结后 {minutes} 分钟内发送的照片才会作为办结照片。"
CASE_TIMELINE_HEADER = "{number} {status} · {category} · {place} · {grid}\n内容：{description}{contact}"
CASE_TIMELINE_LINE = "{at} {action} {actor}{note}"
RESOLVE_NEEDS_NOTE = "请附上处理说明，例如：办结 {number} 已更换灯泡，恢复照明"
NO_OPEN_CASE = "您当前没有可{verb}的工单。回复“我的工单”查看。"
WHICH_CASE = "您有 {count} 个可{verb}的工单，请带上编号回复，例如“{verb} {example}”：\n{lines}"
CASE_NOT_FOUND = "没有找到工单 {number}，请核对编号。"
NOT_YOURS = "工单 {number} 属于{grid}，不在您负责的范围内，不能{verb}。"
ILLEGAL = "工单 {number} 当前状态为“{status}”，不能{verb}。"
RECLASSIFY_USAGE = "请写明工单编号和正确类别，例如“改类 G20261122-0001 道路设施”。可选类别：{categories}"
RECLASSIFIED = "工单 {number} 的类别已由“{before}”改为“{after}”，谢谢，系统会据此学习。"
REASON_NEEDED = "请写明原因，例如：{verb} {number} 不属于本网格，应为春晖第一网格"
RETURNED = "已退回 {number}，交{to}重新派遣。"
RETURNED_FLAG = "【退回】{by}退回：{reason}\n"
ESCALATED = "已上报 {number}，由{to}接手。"
ESCALATED_FLAG = "【上报】{by}上报：{reason}\n"
NOWHERE_ABOVE = "工单 {number} 已在最高一级，无法再上报。"
DISPATCH_USAGE = "请写明派往的网格，例如：派遣 {number} 和平里第一网格"
DISPATCHED = "已派遣 {number} 给{grid} {leader}。"
NO_LEADER_THERE = "{grid}及其上级都没有网格长，无法派遣。"
MY_CASES_EMPTY = "您当前没有未办结的工单。"
MY_CASES_HEADER = "您的未办结工单（{count} 个，最早的在前）："
MY_CASE_LINE = "{number} {status} · {category} · {place} · {age}"
STAFF_HELP = (
    "网格员指令：\n"
    "接单 编号 —— 接收工单\n"
    "进展 编号 说明 —— 记录进展并通知居民\n"
    "办结 编号 处理说明 —— 办结并通知居民（随后可发现场照片）\n"
    "退回 编号 原因 —— 不属于本网格，退回调度员\n"
    "上报 编号 原因 —— 上报上一级处理\n"
    "派遣 编号 网格 —— 调度员派遣待派工单\n"
    "改类 编号 正确类别 —— 更正工单类别\n"
    "我的工单 —— 查看未办结工单\n"
    "工单 编号 —— 查看工单处理经过\n"
    "只有一个工单时可省略编号。"
)

UNKNOWN_PLACE = "未说明"
WECOM_NOT_STAFF = "您不在本街道网格工作人员名单中，无法使用工单指令。如需登记，请联系街道调度员。"
