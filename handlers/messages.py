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

# Pushes to staff. A card carries the case's short reference (#3) for replies.
PUSH_NEW_CASE = (
    "{urgent}【{title}】{number}（回复用 #{ref}）\n类别：{category}\n地点：{place}\n网格：{grid}\n内容：{description}\n"
    "{contact}{due}{footer}"
)
CARD_TITLE_NEW = "新工单"
CARD_TITLE = "工单"
CARD_FOOTER_WORK = "回复“接单 #{ref}”接单；处理完回复“办结 #{ref} 处理说明”。"
CARD_FOOTER_TRANSFER = "回复“接单 #{ref}”接收；不归你方处理请回复“拒收 #{ref} 原因”。"
CARD_FOOTER_VERIFY = "核查后回复“通过 #{ref}”，或“返工 #{ref} 原因”。"
CARD_FOOTER_EXTENSION = "回复“同意延期 #{ref}”，或“不同意延期 #{ref} 原因”。"
CARD_DUE = "办结时限：{due}\n"
CONTACT_LINE = "联系电话：{phone}\n"
CATEGORY_TO_CONFIRM = "{category}（待确认，如不对请回复“改类 {number} 正确类别”）"
PUSH_REROUTED = "工单 {number} 按居民补充的位置已改派给{grid}，您无需处理。"
URGENT_FLAG = "【紧急】"
RETURNED_FLAG = "【退回】{by}退回：{reason}\n"
ESCALATED_FLAG = "【上报】{by}上报：{reason}\n"
TRANSFER_FLAG = "【转派】{by}转派：{reason}\n"
TRANSFER_REFUSED_FLAG = "【转派被拒】{by}拒收：{reason}\n"
VERIFY_FLAG = "【待核查】{by}办结：{note}\n"
REWORK_FLAG = "【返工】{by}核查未通过（第 {count} 次）：{reason}\n"
EXTENSION_FLAG = "【延期申请】{by}申请将办结时限由 {old} 延至 {new}：{reason}\n"
REOPEN_FLAG = "【重办】居民评价不满意：{reason}\n"
WOKEN_FLAG = "【恢复】挂起到期（{reason}），请继续处理。\n"
PUSH_TRANSFER_TAKEN = "工单 {number} 已由{target} {leader}接收，您无需再处理。"
PUSH_EXTENSION_APPROVED = "【延期获批】工单 {number} 办结时限延至 {date}。"
PUSH_EXTENSION_REFUSED = "【延期未获批】工单 {number}：{reason}。办结时限仍为 {due}。"
PUSH_URGENT_GROUP = (
    "【紧急工单】{number} {category} · {place}\n{description}\n"
    "请 {leader} 立即处理（回复公众号或企业微信“接单 {number}”）。"
)

# Pushes to residents.
PUSH_ACCEPTED = "您反映的问题（{number}）已由{grid} {leader}接单，正在处理。"
PUSH_PROGRESS = "您反映的问题（{number}）有新进展：{note}"
PUSH_RESOLVED = "您反映的问题（{number}）已办结：{note}\n感谢您的反映！"
PUSH_RATE = "\n请您评价：回复 1 满意，2 基本满意，3 不满意（可附原因，如“3 灯还是不亮”）。"
PUSH_TRANSFERRED = "您反映的问题（{number}）已转由{target}处理。"
PUSH_SUSPENDED = "您反映的问题（{number}）暂缓处理：{reason}。预计 {date} 恢复处理。"
PUSH_EXTENDED = "您反映的问题（{number}）办理时限延至 {date}：{reason}。"
PUSH_REOPENED = "您反映的问题（{number}）已重新交办给{grid} {leader}处理。"
PUSH_UNFOUNDED = "您反映的问题（{number}）经核实不属实：{reason}。如有疑问，可回复“查询 {number}”或再次反映。"
PUSH_MERGED = "您反映的问题（{number}）与工单 {original} 是同一问题，已合并处理，进展会一并通知您。"

# Replies to staff.
ACCEPTED = "已接单 {number}（{category} · {place}）。处理完毕请回复“办结 {number} 处理说明”。"
RESOLVED = "已办结 {number}，已通知居民。如有现场照片，现在发过来即可附到工单上。"
PROGRESS_NOTED = "已记录 {number} 的进展，已通知居民。"
PROGRESS_NEEDS_NOTE = "请写明进展，例如：进展 {number} 已联系供电所，明天上午维修"
PROOF_ATTACHED = "照片已附到工单 {number}（办结照片）。"
STAFF_LOCATION_UNUSED = "已收到位置，但位置不会登记为工单。工单指令请用文字发送，如：进展 #3 已到现场处理。"
STAFF_PHOTO_UNUSED = "照片没有附到任何工单：办结后 {minutes} 分钟内发送的照片才会作为办结照片。"
CASE_TIMELINE_HEADER = "{number} {status} · {category} · {place} · {grid}\n内容：{description}{contact}{due}"
CASE_TIMELINE_DUE = "\n办结时限：{due}"
CASE_TIMELINE_LINE = "{at} {action} {actor}{note}"
RESOLVE_NEEDS_NOTE = "请附上处理说明，例如：办结 {number} 已更换灯泡，恢复照明"
NO_OPEN_CASE = "您当前没有可{verb}的工单。回复“我的工单”查看。"
WHICH_CASE = "您有 {count} 个可{verb}的工单，请带上编号回复，例如“{verb} {example}”：\n{lines}"
CASE_CHOICE_LINE = "#{ref} {number} {category} · {place}"
CASE_NOT_FOUND = "没有找到工单 {number}，请核对编号。"
REF_NOT_FOUND = "没有找到 #{ref}，请核对工单卡片上的编号，或回复“我的工单”查看。"
NOT_YOURS = "工单 {number} 属于{grid}，不在您负责的范围内，不能{verb}。"
NOT_YOUR_PART = "工单 {number}：“{verb}”须由{who}操作。"
ILLEGAL = "工单 {number} 当前状态为“{status}”，不能{verb}。"
RECLASSIFY_USAGE = "请写明工单编号和正确类别，例如“改类 G20261122-0001 道路设施”。可选类别：{categories}"
RECLASSIFIED = "工单 {number} 的类别已由“{before}”改为“{after}”，谢谢，系统会据此学习。"
REASON_NEEDED = "请写明原因，例如：{verb} {number} 不属于本网格，应为春晖第一网格"
RETURNED = "已退回 {number}，交{to}重新派遣。"
ESCALATED = "已上报 {number}，由{to}接手。"
NOWHERE_ABOVE = "工单 {number} 已在最高一级，无法再上报。"
DISPATCH_USAGE = "请写明派往的网格，例如：派遣 {number} 和平里第一网格"
DISPATCHED = "已派遣 {number} 给{grid} {leader}。"
NO_LEADER_THERE = "{grid}及其上级都没有负责人，无法派遣。"
TRANSFER_USAGE = (
    "请写明转派去向和原因，例如：转派 {number} 城管 占道经营归城管执法。可转派的部门：{departments}，或任一网格。"
)
TRANSFER_SAME = "工单 {number} 已在{grid}，无需转派。"
TRANSFERRED = "已转派 {number} 给{target} {leader}。对方接收前仍由您负责（首接负责）。"
TRANSFER_TAKEN = "已接收 {number}（{category} · {place}），现由您负责。处理完毕请回复“办结 {number} 处理说明”。"
TRANSFER_REFUSED = "已拒收 {number}，交还{owner}继续处理。"
SUSPEND_USAGE = "请写明挂起到哪天和原因，例如：挂起 {number} 到12月1日 等待配件"
SUSPENDED = "已挂起 {number} 到 {date}，届时自动恢复；提前恢复请回复“恢复 {number}”。已通知居民。"
RESUMED = "已恢复处理 {number}。"
EXTENSION_USAGE = "请写明延期到哪天和原因，例如：延期 {number} 到12月5日 施工队排期"
DATE_NOT_AFTER_TODAY = "日期须晚于今天。{usage}"
EXTENSION_PENDING = "工单 {number} 已有延期申请（延至 {date}）待审批。"
EXTENSION_NOT_LATER = "延期后的时限须晚于现在的办结时限 {due}。"
EXTENSION_REQUESTED = "已提交延期申请（{number} 延至 {date}），等待{approver}审批。"
NO_APPROVER = "工单 {number} 的负责人已在最高一级，没有可审批延期的上级。"
NO_EXTENSION_ASKED = "工单 {number} 没有待审批的延期申请。"
EXTENSION_APPROVED = "已同意 {number} 延期至 {date}，已通知{leader}和居民。"
EXTENSION_REFUSED = "已不同意 {number} 的延期申请，已通知{leader}。"
SUBMITTED = "已提交核查 {number}：{verifier}核查通过后即办结并通知居民。"
VERIFIED = "已核查通过 {number}，已通知居民。"
REWORKED = "已退回返工 {number}（第 {count} 次），已通知{leader}。"
DUPLICATE_USAGE = "请写明与哪个工单重复，例如：重复 {number} G20261122-0001"
DUPLICATE_BAD_ORIGINAL = "工单 {original} 不存在、已结束或就是本工单，不能作为原工单。"
MARKED_DUPLICATE = "已将 {number} 标为与 {original} 重复并合并，居民会收到 {original} 的进展。"
MARKED_UNFOUNDED = "已将 {number} 标为不属实并结案，已通知居民。"
BLOCK_USAGE = "请写明原因，例如：屏蔽 {number} 多次发送无关广告"
BLOCK_NOBODY = "工单 {number} 没有可屏蔽的反映人。"
BLOCKED_DONE = "已屏蔽 {number} 的反映人：{reason}。其消息仍会保存，但不再生成工单。解除请回复“解除屏蔽 {number}”。"
UNBLOCKED = "已解除屏蔽 {number} 的反映人。"
DISPATCHERS_ONLY = "“{verb}”须由调度员操作。"
# The daily digest, the weekly summary, and undelivered pushes (handlers/digest.py).
DIGEST_HEADER = "【每日工单提醒】{day}　{name}，您好："
DIGEST_COUNTS = "未办结 {count} 件：已超期 {overdue} 件，今日到期 {today} 件，待接单 {unaccepted} 件。"
DIGEST_LINE = "#{ref} {number} {status} · {category} · {place}{due}"
DIGEST_OVERDUE = " · 已超期{late}"
DIGEST_MORE = "……另有 {count} 件"
DIGEST_UNDISPATCHED = "待派遣工单 {count} 件，请及时派遣。"
DIGEST_UNDELIVERED = "昨日以来有 {count} 条消息未能送达，回复「未送达」查看。"
DIGEST_FOOTER = "回复「我的工单」查看全部，「帮助」查看指令。"
WEEKLY_HEADER = "【{name} 工单周报】{period}"
WEEKLY_TOTAL = (
    "新收 {received} 件，办结 {resolved} 件（按期 {on_time} 件，{on_time_rate}），"
    "评价 {rated} 件，满意 {satisfied} 件（{satisfied_rate}）；周末未办结 {open} 件，其中超期 {overdue} 件。"
)
WEEKLY_LINE = (
    "{name}：新收 {received} · 办结 {resolved}（按期 {on_time_rate}）· 满意 {satisfied_rate} · "
    "未办结 {open} · 超期 {overdue}"
)
UNDELIVERED_NONE = "近 {days} 天没有未能送达的消息。"
UNDELIVERED_HEADER = "近 {days} 天未能送达的消息（{count} 条，最新的在前）："
UNDELIVERED_LINE = "{at} 工单 {number} → {who}：{reason}"
UNDELIVERED_FOOTER = "处理原因后（如更正成员的微信或企业微信账号），回复「重发」重新发送。"
RESENT = "已重新发送 {count} 条消息。"
RECIPIENT_GROUP = "网格群（{name}）"
RECIPIENT_RESIDENT = "居民"
RECIPIENT_UNKNOWN = "未知收件人"

MY_CASES_EMPTY = "您当前没有未办结的工单。"
MY_CASES_HEADER = "您的未办结工单（{count} 个，最早的在前）："
MY_CASE_LINE = "#{ref} {number} {status} · {category} · {place} · {age}{due}"
MY_CASE_DUE = " · 限{due}"
MY_CASE_OVERDUE = " · 已超期"
STAFF_HELP = (
    "网格员指令（编号可用工单卡片上的 #3 代替；只有一个工单时可省略）：\n"
    "接单 #3 —— 接收工单（也用于接收转派来的工单）\n"
    "进展 #3 说明 —— 记录进展并通知居民\n"
    "办结 #3 处理说明 —— 办结并通知居民（随后可发现场照片）\n"
    "转派 #3 去向 原因 —— 转给其他网格或部门（城管、供水、物业……）\n"
    "拒收 #3 原因 —— 不接收转派来的工单\n"
    "退回 #3 原因 —— 不属于本网格，退回调度员\n"
    "上报 #3 原因 —— 上报上一级处理\n"
    "挂起 #3 到12月1日 原因 —— 等待外部条件，到期自动恢复；恢复 #3 提前恢复\n"
    "延期 #3 到12月5日 原因 —— 申请延长办结时限，由上级审批\n"
    "同意延期 #3 / 不同意延期 #3 原因 —— 上级审批延期\n"
    "通过 #3 / 返工 #3 原因 —— 核查办结情况\n"
    "重复 #3 G原工单编号 / 不属实 #3 原因 —— 结案并说明\n"
    "派遣 #3 网格 —— 调度员派遣待派工单\n"
    "屏蔽 #3 原因 / 解除屏蔽 #3 —— 调度员管理恶意反映\n"
    "未送达 / 重发 —— 调度员查看、重发未能送达的消息\n"
    "改类 #3 正确类别 —— 更正工单类别\n"
    "我的工单 —— 查看未办结工单；工单 #3 —— 查看处理经过"
)

# Residents: rating, abuse limits.
RATED = "感谢您的评价（{rating}）！工单 {number} 已结案。"
REOPENED = (
    "很抱歉没有让您满意。工单 {number} 已重新交办给{grid} {leader}，处理进展会在这里通知您。"
    "如需补充说明，请回复“{number} 说明”。"
)
REOPEN_NO_REASON = "（未说明原因）"
SUPPLEMENT_BY_NUMBER = "已补充到工单 {number}，已转告负责人。"
PUSH_SUPPLEMENT = "【居民补充】工单 {number}：{note}"
THROTTLED = "您发送得太频繁了，请稍后再发。已发送的消息我们都已收到。"
CASES_CAPPED = "您近一小时已反映 {count} 个问题，我们正在处理。新问题请稍后再报；紧急情况请拨打 110/119/120。"
BLOCKED_NOTICE = "您的账号已被限制反映问题。如有疑问，请联系所在社区。"

UNKNOWN_PLACE = "未说明"
WECOM_NOT_STAFF = "您不在本街道网格工作人员名单中，无法使用工单指令。如需登记，请联系街道调度员。"

# Pushes merged into one when WeChat's customer-service rules stop them going one by one
# (bot/delivery.py): as one text, and as a template / subscription message's values.
MERGED_UPDATES = "您有{count}条工单进展：\n{items}"
MERGED_ITEM = "{n}. {text}"
MERGED_OTHER = "（一条{kind}消息）"
TEMPLATE_SUMMARY = "共{count}条进展，回复“查询”看详情"
TEMPLATE_NUMBERS = "{number}等{count}件"
TEMPLATE_NO_NUMBER = "-"
TEMPLATE_NO_STATUS = "通知"
TEMPLATE_DROP = ("您反映的问题",)  # boilerplate left out of a template's 20-character summary

# The follow-up engine: reminders (催办) and escalation (督办) until the case is closed.
PING_REMIND = {
    "accept": "【催办】工单 {number}（#{ref}）请于 {deadline} 前接单：回复“接单 #{ref}”。",
    "resolve": "【催办】工单 {number}（#{ref}）将于 {deadline} 到期，请抓紧办理；办完回复“办结 #{ref} 处理说明”。",
    "verify": "【催办】工单 {number}（#{ref}）待您核查，请于 {deadline} 前回复“通过 #{ref}”或“返工 #{ref} 原因”。",
}
PING_DUE = {
    "accept": (
        "【超时未接单】工单 {number}（#{ref}）接单时限 {deadline} 已到，请立即回复“接单 #{ref}”，否则将报上级督办。"
    ),
    "resolve": (
        "【已到期】工单 {number}（#{ref}）办结时限 {deadline} 已到，请尽快办结；"
        "需要更多时间请回复“延期 #{ref} 到12月5日 原因”。"
    ),
    "stall": "【无进展】工单 {number}（#{ref}）已有一段时间没有进展，请回复“进展 #{ref} 说明”，否则将报上级督办。",
    "verify": (
        "【超时未核查】工单 {number}（#{ref}）核查时限 {deadline} 已到，请回复“通过 #{ref}”或“返工 #{ref} 原因”。"
    ),
}
PING_WHAT = {"accept": "接单", "resolve": "办结", "stall": "进展", "verify": "核查"}
PING_ESCALATED = (
    "【督办】工单 {number}（#{ref}）{what}已超时 {late}（时限 {deadline}），由{grid} {owner}负责。"
    "请督促办理；回复“工单 #{ref}”查看经过。\n督办：{chain}"
)
PING_ESCALATED_OWNER = "【已报上级督办】工单 {number}（#{ref}）{what}已超时 {late}，已报{chain}督办，请尽快处理。"
CLOSED_UNRATED = "未评价"

# --- The web console (/console/) ---
CONSOLE_REOPENED = "工单 {number} 已重办，交回 {leader} 处理。"
CONSOLE_LOGIN_FAILED = "工号或密码不正确。"
CONSOLE_LOGIN_THROTTLED = "登录失败次数过多，请 {minutes} 分钟后再试。"
CONSOLE_CSRF_FAILED = "页面已过期或来源不明，请刷新后重试。"
CONSOLE_NEEDS_NOTE = "请填写说明或原因。"
CONSOLE_NEEDS_TARGET = "请选择去向。"
CONSOLE_GRID_IMPORTED = "已导入 {nodes} 个网格节点、{staff} 名工作人员。"
CONSOLE_GRID_BAD_FILE = "网格定义文件有误：{reason}"
CONSOLE_GRID_TOP_ONLY = "只有街道调度员可以导入网格定义。"
CONSOLE_STAFF_ADDED = "已添加 {name}（{key}）。"
CONSOLE_STAFF_SAVED = "已保存 {name} 的资料。"
CONSOLE_STAFF_DEACTIVATED = "已停用 {name}：不再接收派单，也不能登录。"
CONSOLE_STAFF_REACTIVATED = "已恢复 {name}。"
CONSOLE_STAFF_HAS_CASES = "{name} 名下还有 {count} 件未办结工单，请先派遣给他人再停用。"
CONSOLE_STAFF_NOT_YOURS = "只能管理您下级网格的工作人员（街道调度员可管理全部），也不能修改自己。"
CONSOLE_STAFF_BAD = "资料有误：{reason}"
CONSOLE_STAFF_KEY_TAKEN = "工号 {key} 已被使用。"
CONSOLE_STAFF_CONTACT_TAKEN = "该微信/企业微信账号已属于另一位工作人员。"
CONSOLE_STAFF_GRID_NOT_YOURS = "只能把人员安排在您可管理的网格。"
CONSOLE_PASSWORD_SET = "已为 {name} 设置新密码，其原有登录已失效。"
CONSOLE_PASSWORD_CLEARED = "已取消 {name} 的密码，其原有登录已失效。"
CONSOLE_PASSWORD_SHORT = "密码至少 {length} 位。"
CONSOLE_LINK_SENT = "一次性登录链接已发送到 {name} 的{channel}，{minutes} 分钟内有效。"
CONSOLE_LINK_NO_ADDRESS = "{name} 没有可用的微信或企业微信账号，无法发送链接。"
CONSOLE_LINK_INACTIVE = "{name} 已停用，不能发送登录链接。"
CONSOLE_LINK_PUSH = (
    "【工单台】{name}，这是您的一次性登录链接，{minutes} 分钟内有效，只能使用一次：\n{url}\n如非本人申请，请忽略。"
)
CONSOLE_LINK_INVALID = "登录链接无效、已使用或已过期，请联系管理员重新发送。"
CHANNEL_NAMES = {"wechat": "微信", "wecom": "企业微信"}
CONSOLE_RATES_NO_NODE = "没有这个网格节点，或不在您的管辖范围内。"
CONSOLE_RATES_BAD_PERIOD = "统计周期不正确，请重新选择。"
CONSOLE_RATES_BAD_DATE = "日期“{text}”不正确，请按 2026-11-01 的格式填写。"
CONSOLE_RATES_BACKWARDS = "结束日期 {last} 早于开始日期 {first}。"
CONSOLE_RATES_TOO_LONG = "统计周期最长三年，请缩短。"

# --- Open311 (GeoReport v2): what other systems and their users read --------------------------------
OPEN311_STATUS_NOTE = "{status}：{note}"
OPEN311_NOTICE_ROUTED = "由{grid}处理，办结时限 {due}。"
OPEN311_NOTICE_WAITING = "已受理，等待人工派遣。"
OPEN311_NOTICE_URGENT = "紧急情况请同时拨打 110/119/120。"
OPEN311_ERR_API_KEY = "api_key 缺失或无效，不能提交。"
OPEN311_ERR_POST_OFF = "本系统未开放通过接口提交（没有配置 api_key）。"
OPEN311_ERR_NO_SERVICE_CODE = "缺少 service_code。"
OPEN311_ERR_UNKNOWN_SERVICE = "没有这个 service_code：{code}"
OPEN311_ERR_NO_LOCATION = "缺少位置：请提供 lat 和 long，或 address_string，或 address_id。"
OPEN311_ERR_LAT_LONG = "lat 和 long 须同时提供，且为有效的 WGS84 经纬度。"
OPEN311_ERR_TOO_LONG = "{field} 过长（最多 {limit} 字）。"
OPEN311_ERR_DATE = "{field} 须为带时区的 W3C 日期时间，如 2010-01-01T00:00:00Z。"
OPEN311_ERR_RANGE = "start_date 须早于 end_date，且时间范围不能超过 90 天。"
OPEN311_ERR_STATUS = "status 只能是 open 或 closed：{value}"
OPEN311_ERR_NOT_FOUND = "没有这个服务请求：{id}"
OPEN311_ERR_NO_RESOURCE = "没有这个资源：{path}（格式请用 .xml 或 .json）"
OPEN311_ERR_BAD_BODY = "请求内容无法解析：须为 UTF-8 编码的表单（application/x-www-form-urlencoded），且不能过大。"
OPEN311_ERR_NUL = "{field} 含有不允许的字符（NUL）。"
OPEN311_ERR_STORAGE = "暂时无法处理，请稍后再试。"
OPEN311_ERR_READ_KEY = "查询服务请求需要有效的 api_key。"
OPEN311_ERR_KEY_REUSED = "Idempotency-Key 已用于另一个不同的请求。"
OPEN311_ERR_IDEMPOTENCY_KEY = "Idempotency-Key 须为 1–{limit} 个字符的字符串。"
